//! `jobsight-run`'s check-ins, against a local HTTP server that records
//! each request (method, path, query, body) and answers as told: the form
//! of each service's documented API, the outcome never lost to the start
//! ping, and one deadline for the whole exit.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jobsight-run");
const UUID: &str = "5bf3a9f2-64b6-4b4c-a5a4-6a1c1f2e8b1d";

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    body: String,
    /// The connection began with a TLS handshake (nothing else was read).
    tls: bool,
}

/// How the server answers a request.
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answer (the connection stays open).
    Hang,
}

type Rule = Arc<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

struct PingServer {
    base: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl PingServer {
    /// A server answering 200 to everything.
    fn ok() -> Self {
        Self::with(|_, _| Reply::Status(200))
    }

    /// A server answering with `rule(request, how many came before)`.
    fn with(rule: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule: Rule = Arc::new(rule);
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = Arc::clone(&sink);
                let rule = Arc::clone(&rule);
                std::thread::spawn(move || serve(stream, &sink, &*rule));
            }
        });
        PingServer { base, seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Request>>, rule: &dyn Fn(&Request, usize) -> Reply) {
    let mut reader = BufReader::new(stream);
    let first = match reader.fill_buf() {
        Ok(bytes) if !bytes.is_empty() => bytes[0],
        _ => return,
    };
    if first == 0x16 {
        let request = Request {
            method: String::new(),
            path: String::new(),
            query: HashMap::new(),
            body: String::new(),
            tls: true,
        };
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), decode(v))
            })
            .collect();
        let request = Request {
            method,
            path: path.to_owned(),
            query,
            body: String::from_utf8_lossy(&body).into_owned(),
            tls: false,
        };
        let before = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.push(request.clone());
            seen.len() - 1
        };
        match rule(&request, before) {
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Reply::Status(code) => {
                let answer = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
                );
                if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Percent-decoding of a query value.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `jobsight-run` with no telemetry and none of the ping variables.
fn jobsight_run() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_")
            || key.starts_with("JOBSIGHT_")
            || key.starts_with("HC_")
            || key.starts_with("CRONITOR_")
            || key.starts_with("SENTRY_")
            || ["CHECK_UUID", "CHECK_SLUG", "TRACEPARENT", "CRON_TZ"].contains(&&*key)
        {
            command.env_remove(&*key);
        }
    }
    command
        .env("OTEL_SDK_DISABLED", "true")
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = command.output().expect("jobsight-run ran");
    (output, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
}

#[test]
fn healthchecks_by_uuid_start_then_exit_status_with_the_output() {
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command.env("HC_API_URL", &server.base).args([
        "--healthchecks-uuid",
        UUID,
        "--",
        "sh",
        "-c",
        "echo only-stdout; exit 4",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(text(&output.stdout), "only-stdout\n");
    assert_eq!(text(&output.stderr), "", "quiet when all is well");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let (start, end) = (&requests[0], &requests[1]);
    assert_eq!(
        (&*start.method, &*start.path),
        ("POST", &*format!("/{UUID}/start"))
    );
    assert_eq!((&*end.method, &*end.path), ("POST", &*format!("/{UUID}/4")));
    let rid = &start.query["rid"];
    assert!(is_uuid(rid), "{rid}");
    assert_eq!(&end.query["rid"], rid, "start and end paired");
    assert_eq!(start.body, "");
    assert_eq!(end.body, "only-stdout");

    // Success: `/0`, with the output too.
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command.env("CHECK_UUID", UUID).args([
        "--healthchecks-url",
        &server.base,
        "--",
        "sh",
        "-c",
        "echo done; echo warn >&2",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0));
    let requests = server.requests();
    assert_eq!(requests[1].path, format!("/{UUID}/0"));
    // Two pipes: the tail keeps each line whole, in the order the wrapper
    // read them, which between two streams is the scheduler's choice.
    let mut lines: Vec<&str> = requests[1].body.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["done", "warn"], "{:?}", requests[1].body);
}

#[test]
fn healthchecks_by_slug_is_created_from_the_schedule() {
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command
        .env("HC_API_URL", &server.base)
        .env("HC_PING_KEY", "pk-123")
        .args([
            "--slug",
            "db-backup",
            "--schedule",
            "0 3 * * *",
            "--",
            "true",
        ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/pk-123/db-backup/start", "/pk-123/db-backup/0"]);
    for r in &requests {
        assert_eq!(
            r.query.get("create").map(String::as_str),
            Some("1"),
            "{r:?}"
        );
    }
    // A slug without the key is refused before the command runs.
    let mut command = jobsight_run();
    command.args(["--slug", "db-backup", "--", "sh", "-c", "echo ran"]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stdout), "");
    assert!(text(&output.stderr).contains("HC_PING_KEY"));
}

#[test]
fn cronitor_gets_its_telemetry_api() {
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command
        .env("CRONITOR_API_KEY", "APIKEY")
        .env("CRONITOR_URL", &server.base)
        .args([
            "--monitor",
            "nightly-job",
            "--environment",
            "production",
            "--",
        ])
        .args(["sh", "-c", "echo boom >&2; exit 3"]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(3));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/p/APIKEY/nightly-job", "no healthchecks paths");
        assert_eq!(r.query["env"], "production");
    }
    assert_eq!(requests[0].query["state"], "run");
    assert_eq!(requests[1].query["state"], "fail");
    assert_eq!(requests[1].query["status_code"], "3");
    assert_eq!(requests[1].query["message"], "boom");
    assert!(requests[1].query["metric"].starts_with("duration:"));
    assert_eq!(requests[0].query["series"], requests[1].query["series"]);
}

#[test]
fn sentry_gets_its_cron_endpoint_and_the_monitor_config() {
    let server = PingServer::ok();
    let host = server.base.trim_start_matches("http://");
    let mut command = jobsight_run();
    command
        .env("SENTRY_DSN", format!("http://PUBKEY@{host}/42"))
        .args([
            "--monitor",
            "my-slug",
            "--schedule",
            "0 3 * * *",
            "--grace",
            "10m",
        ])
        .args(["--tz", "Europe/Berlin", "--max-runtime", "2h", "--", "true"]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for r in &requests {
        assert_eq!(
            r.path, "/api/42/cron/my-slug/PUBKEY/",
            "no healthchecks paths"
        );
        let (status, id) = if r.method == "POST" {
            let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
            let config = &body["monitor_config"];
            assert_eq!(config["schedule"]["type"], "crontab");
            assert_eq!(config["schedule"]["value"], "0 3 * * *");
            assert_eq!(config["checkin_margin"], 10);
            assert_eq!(config["max_runtime"], 120);
            assert_eq!(config["timezone"], "Europe/Berlin");
            (
                body["status"].as_str().unwrap_or("").to_owned(),
                body["check_in_id"].as_str().unwrap_or("").to_owned(),
            )
        } else {
            assert_eq!(r.method, "GET");
            (r.query["status"].clone(), r.query["check_in_id"].clone())
        };
        statuses.push(status);
        ids.push(id);
    }
    assert_eq!(
        requests[0].method, "POST",
        "the first check-in upserts the monitor"
    );
    assert_eq!(statuses, ["in_progress", "ok"]);
    assert_eq!(ids[0], ids[1]);
    assert!(is_uuid(&ids[0]));
}

#[test]
fn one_url_recognised_from_its_form() {
    // A URL ending in a UUID: self-hosted healthchecks.
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command
        .env("JOBSIGHT_PING_URL", format!("{}/ping/{UUID}", server.base))
        .args(["sh", "-c", "exit 1"]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(1));
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [format!("/ping/{UUID}/start"), format!("/ping/{UUID}/1")]
    );

    // A template.
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command.args([
        "--ping-url",
        &format!(
            "{}/hook/{{monitor}}/{{status}}?run={{run_id}}&code={{exit_status}}",
            server.base
        ),
        "--name",
        "etl",
        "--",
        "sh",
        "-c",
        "echo loaded",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let requests = server.requests();
    assert_eq!(requests[0].path, "/hook/etl/in_progress");
    assert_eq!(requests[1].path, "/hook/etl/ok");
    assert_eq!(requests[1].query["code"], "0");
    assert_eq!(requests[1].body, "loaded");
    assert_eq!(requests[0].query["run"], requests[1].query["run"]);

    // Any other URL, healthchecks-style.
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command.args([
        "--ping-url",
        &format!("{}/ping/abc", server.base),
        "--",
        "true",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0));
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc/0"]);
}

#[test]
fn https_ping_urls_are_sent_over_tls() {
    // A plain TCP server sees the TLS handshake begin: the URL was
    // accepted and a TLS client connected (the certificate check fails).
    let server = PingServer::ok();
    let https = server.base.replace("http://", "https://");
    let mut command = jobsight_run();
    command.env("JOBSIGHT_SHUTDOWN_TIMEOUT", "1s").args([
        "--ping-url",
        &format!("{https}/{UUID}"),
        "--",
        "true",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0));
    let requests = server.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.tls),
        "{requests:#?}"
    );
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("scheme is not http"), "{stderr}");
    assert!(!stderr.contains(UUID), "{stderr}");
}

#[test]
fn a_hanging_start_ping_does_not_lose_or_delay_the_outcome() {
    let server = PingServer::with(|r, _| {
        if r.path.ends_with("/start") {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    for command_line in [["sh", "-c", "true"], ["sh", "-c", "sleep 1"]] {
        let mut command = jobsight_run();
        command
            .env("HC_API_URL", &server.base)
            .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "5s")
            .args(["--healthchecks-uuid", UUID, "--"])
            .args(command_line);
        let (output, took) = run(command);
        assert_eq!(output.status.code(), Some(0));
        // The outcome was answered: nothing waits for the start, nor for
        // the deadline.
        let command_time = if command_line[2] == "true" { 0 } else { 1000 };
        assert!(
            took < Duration::from_millis(command_time + 1500),
            "{command_line:?}: {took:?}"
        );
        assert_eq!(
            text(&output.stderr),
            "",
            "an unanswered start is no failure"
        );
    }
    let outcomes = server
        .requests()
        .iter()
        .filter(|r| r.path == format!("/{UUID}/0"))
        .count();
    assert_eq!(outcomes, 2, "{:#?}", server.requests());
}

#[test]
fn a_hanging_service_costs_at_most_the_deadline() {
    let server = PingServer::with(|_, _| Reply::Hang);
    let mut command = jobsight_run();
    command
        .env("HC_API_URL", &server.base)
        .args([
            "--healthchecks-uuid",
            UUID,
            "--deadline",
            "1s",
            "--name",
            "nightly",
        ])
        .args(["--", "sh", "-c", "exit 0"]);
    let (output, took) = run(command);
    assert_eq!(output.status.code(), Some(0));
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_millis(1000 + 1500), "{took:?}");
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr,
        "jobsight-run: nightly: the outcome ping to healthchecks.io got no answer within 1s\n"
    );
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&format!("/{UUID}/0")), "{paths:?}");
}

#[test]
fn a_failing_answer_is_retried() {
    let server = PingServer::with(|r, _| {
        static OUTCOMES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if r.path.ends_with("/0") && OUTCOMES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let mut command = jobsight_run();
    command
        .env("HC_API_URL", &server.base)
        .args(["--healthchecks-uuid", UUID, "--", "true"]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stderr), "");
    let outcomes = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/0"))
        .count();
    assert_eq!(outcomes, 2);
}

#[test]
fn a_ping_service_that_is_down_costs_one_line_without_the_key() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut command = jobsight_run();
    command
        .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "2s")
        .env(
            "JOBSIGHT_PING_URL",
            format!("http://127.0.0.1:{port}/{UUID}"),
        )
        .args(["--name", "nightly", "--", "sh", "-c", "exit 0"]);
    let (output, took) = run(command);
    assert_eq!(output.status.code(), Some(0));
    assert!(took < Duration::from_millis(2000 + 1500), "{took:?}");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("jobsight-run: nightly: the outcome ping"),
        "{stderr}"
    );
    assert!(!stderr.contains(UUID), "{stderr}");
    // --quiet: nothing.
    let mut command = jobsight_run();
    command
        .env("JOBSIGHT_SHUTDOWN_TIMEOUT", "500ms")
        .env(
            "JOBSIGHT_PING_URL",
            format!("http://127.0.0.1:{port}/{UUID}"),
        )
        .args(["-q", "--", "true"]);
    let (output, _) = run(command);
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn a_nested_run_does_not_ping_the_outer_check() {
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command
        .env("JOBSIGHT_PING_URL", format!("{}/outer", server.base))
        .env("JOBSIGHT_TASK_NAME", "outer")
        .args([
            "sh",
            "-c",
            &format!(
                "{BIN} -- true && {BIN} --ping-url {}/inner -- true",
                server.base
            ),
        ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("/outer")).count(),
        2,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("/inner")).count(),
        2,
        "{paths:?}"
    );
}

#[test]
fn the_output_in_the_ping_is_bounded_and_can_be_left_out() {
    let server = PingServer::ok();
    let mut command = jobsight_run();
    command.env("HC_API_URL", &server.base).args([
        "--healthchecks-uuid",
        UUID,
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; exit 1",
    ]);
    let (output, _) = run(command);
    assert_eq!(output.status.code(), Some(1));
    let body = server.requests()[1].body.clone();
    assert!(body.len() <= 10 * 1024, "{}", body.len());
    assert!(body.ends_with("line-1998\nline-1999"), "{body}");
    assert!(body.len() > 9 * 1024, "{}", body.len());

    let server = PingServer::ok();
    let mut command = jobsight_run();
    command
        .env("HC_API_URL", &server.base)
        .args(["--healthchecks-uuid", UUID, "--no-output-in-ping", "--"])
        .args(["sh", "-c", "echo secret-output"]);
    let (output, _) = run(command);
    assert_eq!(text(&output.stdout), "secret-output\n");
    assert_eq!(server.requests()[1].body, "");
}
